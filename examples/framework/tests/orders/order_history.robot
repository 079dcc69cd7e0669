*** Settings ***
Documentation    Order history and order details of the logged-in customer.
Resource    resources/common.resource
Resource    resources/orders.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-124 New Order Appears In Order History
    [Documentation]    A paid order is listed in the history with its products.
    [Tags]    SHOP-124    orders    smoke
    ${order_id}=    Place Order For Products    alice    BK-1001    HM-3001
    Order History Should Contain    ${order_id}
    Order Should Have Status    ${order_id}    paid
    Order Should Contain Product    ${order_id}    HM-3001    1

SHOP-125 Customer Cannot Open Another Customers Order
    [Documentation]    Orders of other customers are not visible.
    [Tags]    SHOP-125    orders    regression
    ${order_id}=    Place Order For Products    alice    EL-2001
    Login As    bob
    Order Should Not Be Accessible    ${order_id}

SHOP-126 New Customer Has Empty Order History
    [Documentation]    A customer without orders sees an empty history.
    [Tags]    SHOP-126    orders    regression
    Login As    dave
    Order History Should Be Empty
