*** Settings ***
Documentation    Adding and removing cart items, stock limits.
Resource    resources/common.resource
Resource    resources/cart.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-114 Add Product To Cart
    [Documentation]    Adding a product shows it in the cart with quantity and total.
    [Tags]    SHOP-114    cart    smoke
    Login As    alice
    Empty Cart
    Add Product To Cart    BK-1001    2
    Cart Should Contain Product    BK-1001    2
    Cart Item Count Should Be    2
    Cart Total Should Be    65.00

SHOP-115 Remove Product From Cart
    [Documentation]    Removing a product leaves the other products in the cart.
    [Tags]    SHOP-115    cart    regression
    Login As    alice
    Empty Cart
    Add Product To Cart    BK-1001
    Add Product To Cart    HM-3001
    Remove Product From Cart    BK-1001
    Cart Should Not Contain Product    BK-1001
    Cart Should Contain Product    HM-3001    1
    Cart Total Should Be    18.75

SHOP-116 Cannot Add More Items Than In Stock
    [Documentation]    The cart refuses quantities above the stock and keeps its content.
    [Tags]    SHOP-116    cart    regression
    Login As    bob
    Empty Cart
    Add Product To Cart Should Fail    EL-2002    5    Only 3 items in stock
    Cart Should Be Empty
