*** Settings ***
Documentation    Product detail pages: price, availability, unknown products.
Resource    resources/common.resource
Resource    resources/catalog.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-111 Product Details Show Name And Price
    [Documentation]    The product page shows the name and the current price.
    [Tags]    SHOP-111    catalog    smoke
    ${product}=    Open Product Details    EL-2001
    Should Be Equal    ${product}[name]    USB-C Charger 65W
    Product Price Should Be    EL-2001    29.99
    Product Should Be Available    EL-2001

SHOP-112 Out Of Stock Product Is Shown As Unavailable
    [Documentation]    Products without stock stay visible but cannot be ordered.
    [Tags]    SHOP-112    catalog    regression
    Product Should Be Unavailable    HM-3002
    Product Stock Should Be    HM-3002    0

SHOP-113 Unknown Product Returns Not Found
    [Documentation]    An unknown SKU answers 404 instead of an empty page.
    [Tags]    SHOP-113    catalog    regression
    Product Should Not Exist    XX-9999
